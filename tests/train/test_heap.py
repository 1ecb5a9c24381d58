import gc

from burnish.train.heap import start_up_frozen


def test_objects_alive_at_start_up_are_frozen_for_the_block_only():
    assert gc.get_freeze_count() == 0
    with start_up_frozen():
        assert gc.get_freeze_count() > 1000  # the interpreter's own objects at least
    assert gc.get_freeze_count() == 0


def test_garbage_cycles_made_inside_the_block_are_still_collected():
    class Node:
        pass

    with start_up_frozen():
        a, b = Node(), Node()
        a.other, b.other = b, a
        ids = {id(a), id(b)}
        del a, b
        gc.collect()
        assert not any(id(o) in ids for o in gc.get_objects() if isinstance(o, Node))


def test_a_heap_frozen_by_the_caller_stays_frozen():
    gc.freeze()
    try:
        with start_up_frozen():
            pass
        assert gc.get_freeze_count() > 0  # not unfrozen (frozen objects that die leave it)
    finally:
        gc.unfreeze()


def test_training_steps_run_on_a_frozen_heap_and_the_run_unfreezes_it(tiny_dir, tmp_path):
    from train_helpers import run_overrides

    from burnish.config import load_config
    from burnish.train.loop import train

    counts = []
    config = load_config(None, run_overrides(tiny_dir, tmp_path / "run", "train.steps=2"))
    train(config, on_step=lambda step, m: counts.append(gc.get_freeze_count()))
    assert len(counts) == 2 and min(counts) > 1000
    assert gc.get_freeze_count() == 0
