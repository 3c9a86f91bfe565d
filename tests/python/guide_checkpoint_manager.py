"""The guide's Python CheckpointManager (../shared/seed), as its users wrote it, to make
the fixture directory `ckpt import` must adopt: best_model.pth, rotated
checkpoint_epoch_N.pth files, and the .tmp leftovers a killed save leaves behind.

Usage: /usr/bin/python3 guide_checkpoint_manager.py DIR
"""
import glob
import os
import re
import sys

import torch


class CheckpointManager:
    BEST_MODEL_NAME = "best_model.pth"
    EPOCH_CKPT_PREFIX = "checkpoint_epoch_"
    INTERRUPT_CKPT_NAME = "interrupt_checkpoint.pth"

    def __init__(self, save_dir="checkpoint", device="cpu", max_to_keep=5):
        self.save_dir = save_dir
        self.device = device
        self.max_to_keep = max_to_keep
        os.makedirs(save_dir, exist_ok=True)

    def _save(self, state, filename):
        path = os.path.join(self.save_dir, filename)
        tmp = path + ".tmp"
        torch.save(state, tmp)
        os.replace(tmp, path)

    def save_best_model(self, state, metric):
        self._save(state, self.BEST_MODEL_NAME)

    def save_epoch_checkpoint(self, state, epoch):
        self._save(state, f"{self.EPOCH_CKPT_PREFIX}{epoch}.pth")
        self._cleanup_epoch_checkpoints()

    def save_interrupt_checkpoint(self, state):
        self._save(state, self.INTERRUPT_CKPT_NAME)

    def _cleanup_epoch_checkpoints(self):
        pattern = os.path.join(self.save_dir, f"{self.EPOCH_CKPT_PREFIX}*.pth")
        epochs = []
        for path in glob.glob(pattern):
            match = re.search(rf"{self.EPOCH_CKPT_PREFIX}(\d+)\.pth$", path)
            if match:
                epochs.append((int(match.group(1)), path))
        for _, path in sorted(epochs, reverse=True)[self.max_to_keep:]:
            os.remove(path)


def main():
    directory = sys.argv[1]
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    manager = CheckpointManager(directory, max_to_keep=5)
    best_acc = 0.0
    for epoch in range(1, 9):
        val_acc = 0.5 + epoch * 0.05
        state = {"epoch": epoch, "model": model.state_dict(), "best_acc": best_acc, "train_loss": 1.0 / epoch,
                 "val_acc": val_acc}
        manager.save_epoch_checkpoint(state, epoch)
        if val_acc > best_acc:
            best_acc = val_acc
            state["best_acc"] = best_acc
            manager.save_best_model(state, best_acc)
    # A save killed between torch.save and os.replace leaves its .tmp behind.
    torch.save({"epoch": 9}, os.path.join(directory, "checkpoint_epoch_9.pth.tmp"))


if __name__ == "__main__":
    main()
