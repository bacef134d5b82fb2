"""From deposited files to a release: validate, upgrade, check quality, publish."""
