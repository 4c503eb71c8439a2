"""Dockerfile checks of validate.py: docker/Dockerfile and
docker/Dockerfile.cuda parsed with the official Dockerfile parser (PyPI's
`dockerfile`, bindings to the Go parser)."""

import os

import dockerfile

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def check_dockerfile(name, build_flag):
    """Every `COPY --from` names an earlier stage; the binary is built with
    `build_flag`; the last stage serves with the models in /models."""
    cmds = dockerfile.parse_file(os.path.join(ROOT, "docker", name))
    stages, env = [], {}
    for c in cmds:
        if c.cmd == "FROM":
            stages.append(c.value[2] if len(c.value) > 2 else None)
            env = {}
        elif c.cmd == "COPY":
            for flag in c.flags:
                if flag.startswith("--from="):
                    assert flag[7:] in stages[:-1], f"{name}: COPY {flag} of no earlier stage"
        elif c.cmd == "ENV":
            env.update(zip(c.value[::2], c.value[1::2]))
    builds = [c.value[0] for c in cmds if c.cmd == "RUN" and "cargo build" in c.value[0]]
    assert builds and all(build_flag in b for b in builds), f"{name}: {builds}"
    assert env.get("RAGD_MODELS_DIR") == "/models", f"{name}: models not in /models: {env}"
    assert env.get("RAGD_HOST") == "0.0.0.0", f"{name}: binds loopback only"
    (entry,) = [c.value for c in cmds if c.cmd == "ENTRYPOINT"]
    assert list(entry) == ["ragd", "serve"], f"{name}: {entry}"
    print(f"ok   docker/{name}: {len(stages)} stages, models in /models, `ragd serve`")
