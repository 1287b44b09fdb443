"""Run one Lambda handler the way the Lambda runtime would, in a bare interpreter.

Started by invoke_check.py as `python3.13 -I -S lambda_runner.py SPEC`: no site-packages, no
user paths; sys.path holds only the built function, its built layer and the packages the Lambda
python3.13 runtime provides. Standard library only. Prints the handler's answer as JSON.
"""

import json
import sys
import time
import uuid


def main() -> None:
    spec = json.loads(sys.argv[1])
    sys.path[:0] = [spec["function_dir"], spec["layer_dir"], spec["runtime_dir"]]

    class Context:
        function_name = spec["function_name"]
        memory_limit_in_mb = 256
        invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function_name}"
        aws_request_id = str(uuid.uuid4())
        log_group_name = f"/aws/lambda/{function_name}"
        log_stream_name = "invoke-check"
        function_version = "$LATEST"
        _deadline = time.monotonic() + spec.get("timeout", 30)

        def get_remaining_time_in_millis(self) -> int:
            return max(0, int((self._deadline - time.monotonic()) * 1000))

    module_name, handler_name = spec["handler"].rsplit(".", 1)
    module = __import__(module_name)
    with open(spec["event"], encoding="utf-8") as handle:
        event = json.load(handle)
    answer = getattr(module, handler_name)(event, Context())
    stray = [
        m
        for m in sys.modules.values()
        if getattr(m, "__file__", None) and "site-packages" in m.__file__
    ]
    print("INVOKE-RESULT " + json.dumps({"answer": answer, "site_packages_modules": len(stray)}))


if __name__ == "__main__":
    main()
