"""The parts of scripts/report.py: reading runs (runs), naming methods (names), the tables (tables, document), the
figures' numbers (series) and their drawing (figures)."""
