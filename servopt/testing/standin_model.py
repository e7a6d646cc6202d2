"""Stand-in ``model.py`` for Triton's Python backend (copied into repositories under test, never imported here).

It reads its own config and answers every request with zero tensors of the declared output types and shapes
(variable dims become 1), batched like the first input when the model batches. This lets a CPU-only
tritonserver load and serve any repository servopt writes, ensembles included.

Timed mode (``servopt verify --standin BASE_MS,PER_ITEM_MS`` and the load-generation tests): when the config has
``parameters`` ``servopt_base_ms`` / ``servopt_per_item_ms``, each execution sleeps BASE + PER_ITEM x (items in
the batch the scheduler formed), so a CPU-only server behaves like a model whose batch latency is linear.
"""

import json
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.batching = int(config.get("max_batch_size", 0)) > 0
        self.outputs = []
        for out in config["output"]:
            dtype = pb_utils.triton_string_to_numpy(out["data_type"])
            dims = [1 if int(d) < 0 else int(d) for d in out["dims"]]
            self.outputs.append((out["name"], dtype, dims))
        params = config.get("parameters", {})

        def param(name):
            return float(params.get(name, {}).get("string_value", 0) or 0)

        self.base_s = param("servopt_base_ms") / 1000.0
        self.per_item_s = param("servopt_per_item_ms") / 1000.0

    def execute(self, requests):
        if self.base_s or self.per_item_s:
            items = sum(r.inputs()[0].as_numpy().shape[0] if self.batching else 1 for r in requests)
            time.sleep(self.base_s + self.per_item_s * items)
        responses = []
        for request in requests:
            first = request.inputs()[0].as_numpy()
            lead = [first.shape[0]] if self.batching else []
            tensors = []
            for name, dtype, dims in self.outputs:
                if dtype == np.object_:
                    data = np.full(lead + dims, b"", dtype=np.object_)
                else:
                    data = np.zeros(lead + dims, dtype=dtype)
                tensors.append(pb_utils.Tensor(name, data))
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
