"""Adapters: webhooks of other CI systems mapped to cipulse `BuildEvent`s."""
