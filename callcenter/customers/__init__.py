"""Identify and Differentiate: who is calling, and what they are worth to us."""
