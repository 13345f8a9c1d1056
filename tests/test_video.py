"""Readers of the video datasets on fixtures written in the real layouts: what the notebooks do not show."""
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from mmp_repro.tracks import attach_mask_tracks, load_videos, read_rj_tracks, read_tracks, tracks_from_masks
from mmp_repro.video import (KNOWN_COUNTS, ImageFrames, Video, read_dataset, read_folder, toy_clip,
                             write_avenue_fixture, write_folder_fixture, write_frames, write_ped2_fixture,
                             write_shanghaitech_fixture, write_video)

WRITERS = {'ped2': write_ped2_fixture, 'avenue': write_avenue_fixture, 'shanghaitech': write_shanghaitech_fixture}
TRACKS = {'ped2': 'rj_tracks', 'avenue': 'rj_tracks', 'shanghaitech': 'tracks'}


@pytest.fixture
def no_data_env(monkeypatch, tmp_path):
    "Point $MMP_DATA and the cache at empty folders, so only explicit roots are found."
    monkeypatch.setenv('MMP_DATA', str(tmp_path / 'data'))
    monkeypatch.setenv('MMP_CACHE', str(tmp_path / 'cache'))
    return tmp_path


@pytest.mark.parametrize('name', list(WRITERS))
def test_every_layout_reads_back(name, tmp_path):
    root = WRITERS[name](tmp_path / name, n_train=3, n_test=2, n_frames=8, size=(30, 40), seed=5)
    train = read_dataset(name, root, 'train')
    assert [v.num_frames for v in train] == [8, 8, 8] and all(v.labels is None for v in train)
    test = load_videos(name, root, 'test', tracks_dir=root / TRACKS[name])
    for i, v in enumerate(test):
        frames, masks, regions = toy_clip(8, (30, 40), 5 + 100 + i)
        assert v.size == (30, 40) and v.read_frame(0).shape == (30, 40, 3) and v.read_frame(0).dtype == np.uint8
        # labels, pixel masks and regions tell the same story
        assert v.labels.tolist() == masks.any((1, 2)).astype(int).tolist()
        assert all((v.read_mask(t) == masks[t]).all() for t in range(8))
        np.testing.assert_array_equal(v.regions, regions)
        # the anomalous square is bright in the decoded frame (lossy formats included)
        _, t, x0, y0, x1, y1 = regions[-1]
        assert v.read_frame(t)[y0:y1 + 1, x0:x1 + 1].mean() > 200


def test_frames_are_read_on_demand(tmp_path):
    files = write_frames(tmp_path / 'clip', toy_clip(5, (20, 24))[0])
    v = Video('clip', ImageFrames(files))
    files[3].unlink()  # nothing was read up front, so only frame 3 is now missing
    assert v.read_frame(4).shape == (20, 24, 3)
    with pytest.raises(ValueError, match='003.jpg: unreadable image'):
        v.read_frame(3)


def test_video_file_random_access_matches_sequential_and_pickles(tmp_path):
    write_video(tmp_path / 'a.avi', toy_clip(9, (24, 32))[0])
    v = read_folder(tmp_path)[0]
    seq = list(v.frames())
    for i in (7, 2, 3, 8, 0):
        np.testing.assert_array_equal(v.read_frame(i), seq[i])
    v2 = pickle.loads(pickle.dumps(v))  # e.g. for DataLoader workers: the open capture is not pickled
    np.testing.assert_array_equal(v2.read_frame(5), seq[5])
    with pytest.raises(IndexError, match='frame 9 of 9'):
        v.read_frame(9)


def test_roots_come_from_mmp_data(no_data_env, monkeypatch):
    write_ped2_fixture(no_data_env / 'data' / 'ped2')
    assert len(read_dataset('ped2', split='test')) == 2
    # a root pointing at the UCSDped2 folder itself works too
    assert len(read_dataset('ped2', no_data_env / 'data' / 'ped2' / 'UCSDped2', 'train')) == 2


@pytest.mark.parametrize('name', ['ped2', 'avenue', 'shanghaitech', 'street', 'plaza'])
def test_missing_dataset_names_the_tree_and_the_source(name, no_data_env):
    with pytest.raises(FileNotFoundError) as e:
        read_dataset(name, split='test')
    msg = str(e.value)
    assert 'Expected tree' in msg and str(no_data_env / 'data' / name) in msg and ('http' in msg or 'make_street' in msg or 'make_plaza' in msg)


def test_bad_inputs_name_the_file(tmp_path):
    root = write_avenue_fixture(tmp_path / 'avenue', n_test=1)
    mat = root / 'testing_label_mask' / '1_label.mat'
    scipy.io.savemat(str(mat), {'gt': np.zeros(3)})
    with pytest.raises(ValueError, match='1_label.mat: no key volLabel'):
        read_dataset('avenue', root)
    mat.unlink()
    with pytest.raises(FileNotFoundError, match='1_label.mat: masks of 01.avi missing'):
        read_dataset('avenue', root)

    root = write_ped2_fixture(tmp_path / 'ped2', n_test=1)
    for f in (root / 'UCSDped2' / 'Test' / 'Test001_gt').iterdir(): f.unlink()
    (root / 'UCSDped2' / 'Test' / 'Test001_gt').rmdir()
    with pytest.raises(FileNotFoundError, match='Test001_gt: pixel masks of Test001 missing'):
        read_dataset('ped2', root)

    root = write_shanghaitech_fixture(tmp_path / 'sht', n_test=1)
    np.save(root / 'testing' / 'test_pixel_mask' / '01_0001.npy', np.zeros((4, 24, 32), np.uint8))
    with pytest.raises(ValueError, match='01_0001.npy: 4 masks but 6 frames'):
        read_dataset('shanghaitech', root)
    (root / 'testing' / 'test_pixel_mask' / '01_0001.npy').unlink()  # pixel masks are optional
    assert read_dataset('shanghaitech', root)[0].masks is None
    (root / 'testing' / 'frames' / '01_0002').mkdir()
    with pytest.raises(ValueError, match='01_0002: no frames found'):
        read_dataset('shanghaitech', root)
    for p in (root / 'training' / 'videos').iterdir(): p.unlink()
    with pytest.raises(ValueError, match='unknown layout'):
        read_dataset('shanghaitech', root, 'train')


@pytest.mark.parametrize('keep', [0.33, 0.9])
def test_truncated_video_is_reported(tmp_path, keep):
    "Cut short, a video either cannot be opened or fails at the first frame it cannot decode; both name the file."
    path = write_video(tmp_path / 'cam.avi', toy_clip(12, (24, 32))[0])
    path.write_bytes(path.read_bytes()[: int(len(path.read_bytes()) * keep)])
    try:
        v = read_folder(tmp_path)[0]
    except ValueError as e:  # OpenCV may refuse the file outright
        assert 'cam.avi' in str(e)
        return
    with pytest.raises(ValueError, match='cam.avi'):
        list(v.frames())


def test_user_folder_layouts(tmp_path):
    write_folder_fixture(tmp_path / 'mine')
    write_frames(tmp_path / 'mine' / 'cam1', toy_clip(3)[0])  # cam1.avi and cam1/ would share a name
    with pytest.raises(ValueError, match='share a name'):
        read_folder(tmp_path / 'mine')
    write_frames(tmp_path / 'single', toy_clip(4)[0])  # a lone frame folder is one video
    assert [(v.name, v.num_frames) for v in read_folder(tmp_path / 'single')] == [('single', 4)]
    with pytest.raises(FileNotFoundError, match='folder not found'):
        read_folder(tmp_path / 'absent')


def test_rj_frame_numbering_and_malformed_lines(tmp_path):
    p = tmp_path / '01.txt'
    p.write_text('0001.jpg 2 10 10 4 4\n0003.jpg 2 12 10 4 4\n')
    assert read_rj_tracks(p, (30, 40))[:, 1].tolist() == [0, 2]  # numbered from 1 by default
    assert read_rj_tracks(p, (30, 40), first_index=0)[:, 1].tolist() == [1, 3]
    p.write_text('0001.jpg 2 10 10\n')
    with pytest.raises(ValueError, match='01.txt:1: expected "frame_file track_id'):
        read_rj_tracks(p, (30, 40))


def test_mask_tracks_match_true_tracks_and_are_labelled(tmp_path):
    root = write_shanghaitech_fixture(tmp_path / 'sht', n_frames=10, size=(30, 40))
    videos = attach_mask_tracks(read_dataset('shanghaitech', root))
    for i, v in enumerate(videos):
        np.testing.assert_array_equal(v.regions, toy_clip(10, (30, 40), 100 + i)[2])
        assert 'not comparable with published numbers' in v.regions_source
    # two blobs that touch merge into one region: one reason these tracks differ from hand annotations
    m = np.zeros((1, 20, 20), bool); m[0, 2:8, 2:8] = m[0, 8:14, 8:14] = True
    assert len(tracks_from_masks(m, min_area=1)) == 1


REAL = {'ped2': Path('UCSDped2'), 'avenue': Path('testing_videos'), 'shanghaitech': Path('testing')}


def _even(total: int, n: int) -> list[int]:
    return [total // n + (i < total % n) for i in range(n)]


# Per-video frame counts of the real splits. The test splits' lists are the per-video lengths that public
# evaluation code for these datasets slices its frame scores by. For the training splits we know only the
# totals, so they are split evenly: the readers' video and frame totals are still the real ones. KNOWN_COUNTS
# gives ShanghaiTech's video counts only, and its test split's ~40k frames as .jpg files take longer to write
# than this test may run, so its clips are 2 frames long.
REAL_LENGTHS = {
    ('ped2', 'train'): _even(2550, 16),
    ('ped2', 'test'): [180, 180, 150, 180, 150, 180, 180, 180, 120, 150, 180, 180],
    ('avenue', 'train'): _even(15328, 16),
    ('avenue', 'test'): [1439, 1211, 923, 947, 1007, 1283, 605, 36, 1175, 841, 472, 1271, 549, 507, 1001, 740, 426,
                         294, 248, 273, 76],
    ('shanghaitech', 'train'): [2] * 330,
    ('shanghaitech', 'test'): [2] * 107,
}


def _check_counts(name: str, root: Path, split: str) -> list[Video]:
    "The reader finds the documented numbers of videos and frames (KNOWN_COUNTS) of `split` under `root`."
    videos = read_dataset(name, root, split)
    n_videos, n_frames = KNOWN_COUNTS[(name, split)]
    assert len(videos) == n_videos
    if n_frames is not None: assert sum(v.num_frames for v in videos) == n_frames
    return videos


@pytest.mark.parametrize('name', list(REAL))
@pytest.mark.parametrize('split', ['train', 'test'])
def test_real_dataset_counts(name, split):
    "Runs only where the real dataset is present ($MMP_DATA/<name>)."
    base = Path(os.environ.get('MMP_DATA', '/nonexistent')) / name
    if not (base / REAL[name]).exists(): pytest.skip(f'{base} absent')
    _check_counts(name, base, split)


@pytest.mark.parametrize('name, split', list(REAL_LENGTHS))
def test_dataset_counts_on_fixtures_of_the_real_lengths(name, split, tmp_path):
    "What test_real_dataset_counts checks, everywhere: the real layouts and lengths at 8x8 pixels per frame."
    lengths = REAL_LENGTHS[(name, split)]
    n_videos, n_frames = KNOWN_COUNTS[(name, split)]
    assert len(lengths) == n_videos
    if n_frames is not None: assert sum(lengths) == n_frames
    clips = {'n_train': lengths, 'n_test': 0} if split == 'train' else {'n_train': 0, 'n_test': lengths}
    root = WRITERS[name](tmp_path / name, size=(8, 8), **clips)
    assert [v.num_frames for v in _check_counts(name, root, split)] == lengths


@pytest.mark.parametrize('text, message', [
    ('1,0,0,0,4,4\n1,2.5,0,0,4,4\n', '01_0001.txt:2: track_id and frame_idx must be integers'),
    ('1,0,0,0,4,4\n1.4,1,0,0,4,4\n', '01_0001.txt:2: track_id and frame_idx must be integers'),
    ('# c\n1,0,0,0,4,nan\n', '01_0001.txt:2: a value is not a finite number'),
    ('1,0,5,0,4,4\n', '01_0001.txt:1: x_max < x_min'),
])
def test_common_track_files_are_refused_not_rounded(tmp_path, text, message):
    p = tmp_path / '01_0001.txt'; p.write_text(text)
    with pytest.raises(ValueError, match=message.replace('.', r'\.')): read_tracks(p)


def test_tracks_beyond_the_video_name_the_file_line_and_frame_count(tmp_path):
    root = write_shanghaitech_fixture(tmp_path / 'sht', n_train=0, n_test=1, n_frames=6)
    f = root / 'tracks' / '01_0001.txt'
    for text, message in [('1,0,0,0,3,3\n\n1,6,0,0,3,3\n', '01_0001.txt:3: frame_idx 6 is outside the video, which has 6 frames'),
                          ('1,-1,0,0,3,3\n', '01_0001.txt:1: frame_idx is negative')]:
        f.write_text(text)
        with pytest.raises(ValueError, match=message): load_videos('shanghaitech', root, tracks_dir=root / 'tracks')
    f.write_text('1,5,0,0,3,3\n')  # the last frame is inside
    assert load_videos('shanghaitech', root, tracks_dir=root / 'tracks')[0].regions.tolist() == [[1, 5, 0, 0, 3, 3]]
    # R&J files: frame 0009.jpg is index 8 of a 6-frame Avenue video; a fractional track id is refused too
    root = write_avenue_fixture(tmp_path / 'avenue', n_train=0, n_test=1, n_frames=6)
    rj = root / 'rj_tracks' / '01.txt'
    for text, message in [('0001.jpg 2 10 10 4 4\n0009.jpg 2 12 10 4 4\n', '01.txt:2: frame_idx 8 is outside the video, which has 6 frames'),
                          ('0001.jpg 2.5 10 10 4 4\n', '01.txt:1: track_id and frame_idx must be integers'),
                          ('0001.jpg 2 10 10 -4 4\n', '01.txt:1: x_max < x_min')]:
        rj.write_text(text)
        with pytest.raises(ValueError, match=message): load_videos('avenue', root, tracks_dir=root / 'rj_tracks')
