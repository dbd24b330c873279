"""The event-driven engine: stages joined by bounded FIFOs, time in integer picoseconds."""
