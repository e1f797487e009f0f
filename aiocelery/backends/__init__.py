"""Result backends: where a task's state and result are read and awaited."""
