"""Human demonstrations: scripted demos in the sim cell and demo -> reference conversion (no rclpy)."""
