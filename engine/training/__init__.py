"""Training MIA and adapting it to new subjects: everything that runs only while weights change.

One purpose per file:
- config.py: TrainConfig and the StepConfig it shares with adaptation (saved in checkpoints);
- dataset.py: capture folders -> samples (HMCDataset) and the dataset layout;
- augment.py: the 3D augmentation layer (re-render under a perturbed headset pose);
- jitter.py: per-camera 2-D image jitter on top of it;
- sampler.py: which sample keys make the batch of each step (resumable, shardable);
- losses.py: the loss equations (eqs. 2, 5, 6); routing.py: which sample feeds which term;
- optim.py: Adam and step decay; distributed.py: rank, world and device under torchrun;
- run_state.py: random states, code version and stop signals of a resumable run;
- log.py: log.csv and the progress bar; trainer.py: the loop that composes them;
- adapt.py: a new subject's F_new on a frozen B and G (the paper's Table 3).

The model itself is in engine.mia; evaluation (engine.evaluation) never imports this package.
"""
