"""Top-k with ties broken by item id, the same on every device.

``torch.topk`` leaves the order of equal values to the kernel: CPU and CUDA (and two CUDA
kernels for different shapes) may return different items for the same scores, so lists that
feed a decision (recorded teacher lists, the student's lists in knowledge construction, served
recommendations) are taken here: by score, then by the lower id.
"""

import torch


def topk_by_id(scores, k, exact=None):
    """``torch.topk`` of each row with ties broken by the lower column id: (values, columns),
    best first.

    On CPU (``exact`` None and scores on the CPU) a plain float topk of k + 1 answers every row
    whose k + 1 best values are all distinct (set and order are then unambiguous); rows with a
    tie among them are ranked exactly. The exact ranking maps the float32 scores to int32 keys
    with the same order and puts each key in the high half of an int64 whose low half is
    (2^32 - 1 - column), so one topk on the combined keys orders by score, then by id. On an
    accelerator every row takes the exact path: finding the tied rows would cost a host
    synchronisation per call, and an int64 topk is cheap there.
    """
    n = scores.shape[1]
    if k == 0 or scores.shape[0] == 0:
        empty = torch.empty(scores.shape[0], k, device=scores.device)
        return empty, empty.long()
    k = min(k, n)
    if exact is None:
        exact = scores.device.type != "cpu"
    if exact:
        return _topk_by_id_exact(scores, k)
    values, columns = torch.topk(scores, min(k + 1, n), dim=1)
    tied = (values[:, 1:] == values[:, :-1]).any(1)
    values, columns = values[:, :k], columns[:, :k]
    rows = tied.nonzero().view(-1)
    if len(rows):
        exact_values, exact_columns = _topk_by_id_exact(scores[rows], k)
        values, columns = values.clone(), columns.clone()
        values[rows], columns[rows] = exact_values, exact_columns
    return values, columns


def _topk_by_id_exact(scores, k):
    bits = (scores.float() + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into +0.0
    keys = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits).long()
    columns = torch.arange(scores.shape[1], device=scores.device, dtype=torch.long)
    combined = (keys << 32) | (0xFFFFFFFF - columns)
    top = torch.topk(combined, k, dim=1).values
    chosen = 0xFFFFFFFF - (top & 0xFFFFFFFF)
    return scores.gather(1, chosen), chosen
