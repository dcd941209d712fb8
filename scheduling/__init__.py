"""Production scheduling: a flexible job-shop solver on OR-Tools CP-SAT (pure), rescheduling, and a thin store."""
