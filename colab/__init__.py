"""The Colab part of the course: the set-up cell's bootstrap and the badge writer (see colab/README.md)."""
