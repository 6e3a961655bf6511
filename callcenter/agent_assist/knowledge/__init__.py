"""The assist knowledge: questions, treatments, conditions, the bank and the assist panel."""
