"""The learned ranker's learner: online training on every interaction's examples, the
gate, and (``recsys learner``) the process that publishes weight sets on ``ranker-model``."""
