"""The servers of each framework. Importing this package first sets OpenMP's wait policy, before
any framework loads an OpenMP runtime (``modelshelf.openmp``)."""

from modelshelf.openmp import default_wait_policy

default_wait_policy()
