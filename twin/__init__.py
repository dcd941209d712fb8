"""The digital twin: per-machine state engine; imports historian only."""
