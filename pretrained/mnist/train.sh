#!/usr/bin/env bash
# The recipes of the shipped MNIST models, in the order they depend on each other. Each entry trains one model
# into workdir/mnist (resuming whatever is there) and ships it with `python -m ipgan_jax.pretrained add`
# (file + MANIFEST.json entry: commands, commit, hardware and wall time come from the run's provenance.jsonl).
# A model that MANIFEST.json already lists is skipped, so the script can be run in pieces, on several machines:
#
#   bash pretrained/mnist/train.sh                       # everything that is not shipped yet
#   bash pretrained/mnist/train.sh defenses/ipgan/lenet  # only these keys (their dependencies must be shipped
#                                                        # or trained in workdir/mnist)
#
# Wall time on a 2-core CPU: about 30 min for the six classifiers, 20-65 min per IP-GAN, 3-8 min per baseline.
# Commit pretrained/mnist after each model: a session may end at any time.
set -euo pipefail
cd "$(dirname "$0")/../.."
T="python run_train.py --config configs/mnist.py"
D="$T --config.pretrained=True"     # defenses train against the shipped classifiers (targets and surrogates)
S3=target,target,target,lenet_s1,alexnet_s1,mcnn_s1     # M_CNN and AlexNet IP-GAN: all three surrogates

shipped() { python -m ipgan_jax.pretrained list 2>/dev/null | awk '{print $1}' | grep -qx "$1"; }
ONLY="$*"

ship() {   # ship KEY COMMAND...: train (resumes), then add the model unless it is shipped
  local key=$1; shift
  if shipped "$key" || { [ -n "$ONLY" ] && [[ " $ONLY " != *" $key "* ]]; }; then return 0; fi
  echo "== $key: $*"
  "$@"
  python -m ipgan_jax.pretrained add "$key"
  python -m ipgan_jax.pretrained list --write_readme     # README's table follows the manifest
}

ship classifiers/lenet      $T --config.stage=classifier --config.classifier=lenet
ship classifiers/mcnn       $T --config.stage=classifier --config.classifier=mcnn
ship classifiers/alexnet    $T --config.stage=classifier --config.classifier=alexnet
ship classifiers/lenet_s1   $T --config.stage=classifier --config.classifier=lenet_s1 --config.classifier_train.num_epochs=2
ship classifiers/alexnet_s1 $T --config.stage=classifier --config.classifier=alexnet_s1 --config.classifier_train.num_epochs=1
ship classifiers/mcnn_s1    $T --config.stage=classifier --config.classifier=mcnn_s1 --config.classifier_train.num_epochs=1

# IP-GAN (Table 1): step counts chosen on the validation monitor (docs/training.md)
ship defenses/ipgan/lenet   $D --config.classifier=lenet --config.ipgan.attack_sources=target,target,lenet_s1,alexnet_s1
ship defenses/ipgan/alexnet $D --config.classifier=alexnet --config.train.num_steps=4000 \
  --config.ipgan.attack_sources=$S3 --config.train.monitor_sources=mcnn
ship defenses/ipgan/mcnn    $D --config.classifier=mcnn --config.train.num_steps=5000 \
  --config.ipgan.attack_sources=$S3 --config.train.monitor_sources=lenet

# The five baselines of Table 1, defaults of configs/mnist.py
for c in lenet alexnet mcnn; do
  for d in ape_gan dae uipd grip_gan defense_gan; do
    ship defenses/$d/$c $D --config.stage=defense --config.defense=$d --config.classifier=$c
  done
done

# Adaptive IP-GAN (beyond the paper; docs/robust-ipgan.md): PGD-7 through the pipeline for 4000 steps, then
# PGD-20 (step 0.0375) to 6000, the recipe of the best white-box numbers on all three classifiers. Its train state
# ships too. A run may stop at a checkpoint, export it with --config.ipgan_adaptive.num_steps=<that step> and ship
# only its train state; this script then continues it from there (--config.continue_pretrained=True: the same
# generator as an unbroken run) and, once the run is finished, replaces the partial train state with the final one.
A="$D --config.ipgan.adaptive=True --config.ipgan_adaptive.monitor_attack=apgd --config.ipgan_adaptive.num_steps=6000"
P="--config.ipgan_adaptive.attack_phases=((4000,20,0.0375),)"
cont() { if shipped "train_states/ipgan_adaptive/$1"; then echo "--config.continue_pretrained=True"; fi; }
ship defenses/ipgan_adaptive/lenet   $A "$P" $(cont lenet) --config.classifier=lenet \
  --config.ipgan.attack_sources=target,target,lenet_s1,alexnet_s1
ship defenses/ipgan_adaptive/mcnn    $A "$P" $(cont mcnn) --config.classifier=mcnn \
  --config.ipgan.attack_sources=target,target,mcnn_s1,alexnet_s1
ship defenses/ipgan_adaptive/alexnet $A "$P" $(cont alexnet) --config.classifier=alexnet \
  --config.ipgan.attack_sources=target,target,alexnet_s1,mcnn_s1
steps_of() {   # a shipped model's step count (-1: not shipped)
  python -c "import json, sys; m = json.load(open('pretrained/mnist/MANIFEST.json'))['models']; \
print(m.get(sys.argv[1], {}).get('steps', -1))" "$1"
}
for c in lenet mcnn alexnet; do
  ts=train_states/ipgan_adaptive/$c
  if shipped "$ts" && [ "$(steps_of "$ts")" -lt "$(steps_of defenses/ipgan_adaptive/$c)" ] \
      && { [ -z "$ONLY" ] || [[ " $ONLY " == *" $ts "* ]]; }; then   # a partial state whose run has finished
    python -m ipgan_jax.pretrained add "$ts" --replace \
      --reason "the finished run of the same recipe, continued from this partial train state"
    python -m ipgan_jax.pretrained list --write_readme
  else
    ship "$ts" true     # the train state of the run above (its newest checkpoint)
  fi
done
