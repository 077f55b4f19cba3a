"""Model zoo: seed reference networks and NAFNet-style edge students."""
