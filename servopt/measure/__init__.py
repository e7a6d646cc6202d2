"""Measuring models on real hardware: the profiler (``profiler``, ONNX Runtime; ``torch_runtime`` with
``torch_devices``, PyTorch on CPU or CUDA), hardware monitoring (``hwmon``, and ``gpu_sampler`` for NVML over a
measurement window) and the ONNX test models it profiles (``onnx_models``). Nothing is imported here;
``servopt.profile_model`` and ``servopt.HardwareMonitor`` are the public entry points."""
