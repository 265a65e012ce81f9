"""The trading domain: orders, fills, positions and the values they are made of.

Pure model: no I/O, no clocks, no environment. Time always comes in as an argument.
"""
