"""Messages between the actors, by the part of the system that sends them."""
