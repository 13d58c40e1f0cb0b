"""TF Transform preprocessing built from the feature spec in schemas/features.yaml."""
