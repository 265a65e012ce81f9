"""Signals between the strategy and execution modules: the JSON codec and the two buses
(Redis stream `signal:{exchange}`, or an in-process log), both exactly-once per signal id."""
