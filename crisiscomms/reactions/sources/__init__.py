"""Each listening source's logic (parsing, signature checks, polling), framework-free."""
