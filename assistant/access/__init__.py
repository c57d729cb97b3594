"""Who may use the node: user accounts, password hashing and the audit trail."""
