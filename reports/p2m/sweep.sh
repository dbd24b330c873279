#!/usr/bin/env bash
# A design-space sweep as a shell loop (its `snnsim sweep` twin: reports/p2m/sweep.yaml): link lanes x core vector width on the committed ResNet-18
# trace, one CSV of tidy rows with the swept values prepended. Run from the repository root:
#   bash reports/p2m/sweep.sh > sweep.csv
set -euo pipefail
trace=${TRACE:-workloads/resnet_imagenet.npz}
echo "lanes,vector_width,sample,layer,step,component,metric,value,unit"
for lanes in 1 2 4; do
  for vw in 16 32 64; do
    snnsim run hwconfigs/p2m.yaml "$trace" --set link.lanes=$lanes --set core.vector_width=$vw \
      --format csv --progress never | tail -n +2 | grep ',summary,' | sed "s/^/$lanes,$vw,/"
  done
done
