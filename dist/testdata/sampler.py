"""torch.utils.data.DistributedSampler's index lists for the cases on stdin
(one per line: n world rank seed epoch shuffle drop_last), one line of
indices each, for TestSamplerIsPyTorchs."""
import sys

from torch.utils.data import DistributedSampler

for line in sys.stdin:
    n, world, rank, seed, epoch, shuffle, drop_last = map(int, line.split())
    s = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=bool(shuffle), seed=seed, drop_last=bool(drop_last))
    s.set_epoch(epoch)
    print(" ".join(map(str, s)))
