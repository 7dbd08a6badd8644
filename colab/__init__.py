"""What opening a lesson in Colab needs: the bootstrap installer and the badge and set-up cell generator."""
