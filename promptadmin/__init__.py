"""The prompt admin: publishes assistant definitions to the versioned prompts bucket.

It is a separate process from the daemon, with its own write credentials
(``aws/s3-prompt-admin-policy.json``); the daemon keeps its read-only policy.
"""
