"""Stand-in ``model.py`` for Triton's Python backend (copied into repositories under test, never imported here).

It reads its own config and answers every request with zero tensors of the declared output types and shapes
(variable dims become 1), batched like the first input when the model batches. This lets a CPU-only
tritonserver load and serve any repository servopt writes, ensembles included.
"""

import json

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

    def execute(self, requests):
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
