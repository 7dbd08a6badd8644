"""The course's build tooling: the runner, publishing, Colab badges and bootstrap, the command line. Lessons never import it."""
