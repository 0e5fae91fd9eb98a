"""Data for dnn's models: built-in synthetic tasks (readers for users' files arrive with the data issue)."""

from dnn.data.synthetic import adding_problem

__all__ = ["adding_problem"]
