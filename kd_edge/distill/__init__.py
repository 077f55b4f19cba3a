"""Teacher training and teacher-to-student knowledge distillation."""
