"""PyTorch implementation of the betaspec theorems (SPEC.md).

One module per concern, named after SPEC's sections: ``sign_quant`` (§1), ``moments`` and
``hadamard`` (§2), ``rotation``, ``centering`` and ``attention`` (§3, §6), ``last_mile`` (§4),
``residual`` (§5); ``validation`` holds the shared input checks. Every function is pure,
batched over leading dimensions (last dimension = head dimension d), follows its input's
device and dtype (half precision computed in float32), and names in its docstring the
registered theorem(s) it realises.
"""
