"""Running the whole system on one machine: worker processes, kill drills, the demo."""
