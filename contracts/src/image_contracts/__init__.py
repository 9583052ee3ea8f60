"""Contracts shared by the service, the platform and the delivery pipeline, defined once.

Each module is one contract. Nothing here imports another workspace member or a third-party
package, so the service's container image can depend on it without pulling in Pulumi or SciPy.
"""
