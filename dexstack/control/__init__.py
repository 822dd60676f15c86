"""Joint command types shared by drivers (the sim cell), the safety monitor and command sources."""
