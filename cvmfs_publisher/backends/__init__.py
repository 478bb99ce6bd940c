"""Publishing backends behind the one Publisher interface."""
