"""Talking to Kafka and running a local broker; no Faust here."""
