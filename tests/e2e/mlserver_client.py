"""A client written for MLServer's scikit-learn runtime, run by MLServer's own Python (the benchmark's pinned
environment, `.bench/peers/mlserver`): it builds the request with MLServer's codecs, posts it, parses the answer with
`mlserver.types.InferenceResponse` and decodes each output with MLServer's codecs. Prints the decoded outputs as JSON.

    python tests/e2e/mlserver_client.py URL MODEL FORM OUTPUTS < rows.json
FORM: `np` (one tensor) or `pd` (a DataFrame, one column per feature; the feature names come on stdin too);
OUTPUTS: comma-separated output names, or `-` for the server's default.
"""

import json
import sys
import urllib.request

import pandas as pd
from mlserver.codecs import NumpyCodec, NumpyRequestCodec, PandasCodec, StringCodec
from mlserver.types import InferenceResponse, RequestOutput


def main() -> None:
    url, model, form, names = sys.argv[1:5]
    given = json.load(sys.stdin)
    if form == "pd":
        request = PandasCodec.encode_request(pd.DataFrame(given["rows"], columns=given["features"]))
    else:
        import numpy as np

        request = NumpyRequestCodec.encode_request(np.asarray(given["rows"], dtype=np.float64))
    if names != "-":
        request.outputs = [RequestOutput(name=name) for name in names.split(",")]
    sent = urllib.request.Request(
        f"{url}/v2/models/{model}/infer",
        data=request.model_dump_json(exclude_none=True).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(sent, timeout=300) as answer:
        response = InferenceResponse.model_validate_json(answer.read())
    decoded = {}
    for output in response.outputs:
        codec = StringCodec if output.datatype == "BYTES" else NumpyCodec
        value = codec.decode_output(output)
        decoded[output.name] = value.tolist() if hasattr(value, "tolist") else list(value)
    json.dump({"model_name": response.model_name, "parameters": response.parameters.model_dump()
               if response.parameters else {}, "outputs": decoded}, sys.stdout)  # fmt: skip


if __name__ == "__main__":
    main()
