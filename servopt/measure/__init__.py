"""Measuring models on real hardware: the profiler (``profiler``), hardware monitoring (``hwmon``) and the ONNX
test models it profiles (``onnx_models``). Nothing is imported here; ``servopt.profile_model`` and
``servopt.HardwareMonitor`` are the public entry points."""
