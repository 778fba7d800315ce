"""Training: offline (`trainer.offline`) and, from every event, online."""
