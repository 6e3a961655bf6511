"""HTTP plumbing shared by every room: typed routes, OpenAPI, problem bodies."""
