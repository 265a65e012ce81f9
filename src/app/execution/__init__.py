"""The Execution module: signals to risk-checked orders, the exchange's answers, fills and
positions, each order followed to the end."""
