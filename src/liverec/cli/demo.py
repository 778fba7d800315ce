"""`liverec demo`: start the service and let simulated users use it (placeholder until the sim lands)."""
