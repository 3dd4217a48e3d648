"""HTTP routes; each module adapts one concern and leaves the work to the library."""
