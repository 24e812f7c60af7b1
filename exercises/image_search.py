"""연습 1: CLIP 으로 만드는 이미지 검색 엔진 (Exercise 1: CLIP image search).

문장("a photo of a red circle")을 입력하면 갤러리에서 가장 잘 맞는 이미지를 찾아 주는
검색기를 완성하세요. ``__init__`` 은 이미 작성되어 있습니다. ``index_images`` 와 ``search`` 가
필수 과제이고, ``search_by_image``, ``save``, ``load`` 는 도전 과제입니다.

채점(자가 점검)::

    make check                               # 또는: .venv/bin/vlm-course check image_search

The docstrings below fix the contract that the tests check; the Korean TODO hints show one way
to meet it. Every method raises NotImplementedError until you write it.
"""

from __future__ import annotations

import os
import warnings  # noqa: F401 - for the TODOs below

import numpy as np  # noqa: F401 - for the TODOs below
import torch  # noqa: F401 - for the TODOs below
from PIL import Image

from vlm_course.device import pick_device
from vlm_course.loadplan import plan_if_course_model

DEFAULT_MODEL = "openai/clip-vit-base-patch32"

# An image to index or to query with: a PIL image, or the path of an image file.
ImageInput = Image.Image | str | os.PathLike


def _todo(method: str) -> NotImplementedError:
    return NotImplementedError(
        f"CLIPImageSearch.{method} 를 아직 작성하지 않았습니다: exercises/image_search.py 의 "
        f"{method} 에 있는 TODO 를 채우세요. (CLIPImageSearch.{method} is not written yet.)"
    )


class CLIPImageSearch:
    """Search a gallery of images with free text, using CLIP embeddings and cosine similarity.

    Results are lists of dicts, best first::

        [{"index": 7, "path": None, "score": 0.31}, {"index": 2, "path": "photos/cat.jpg", "score": 0.29}, ...]

    * ``index``: the image's position in indexing order (0, 1, 2, ... over all ``index_images``
      calls, counting only the images that were indexed);
    * ``path``: ``str`` of the file path for images indexed from a file, ``None`` for PIL images;
    * ``score``: a Python ``float``, the cosine similarity of the query's and the image's CLIP
      embeddings (between -1 and 1). Scores never increase down the list.
    """

    def __init__(self, model_name: str = DEFAULT_MODEL) -> None:
        """Load CLIP (its toy stand-in under the toy profile) and start with an empty index.

        This part is written for you.
        """
        from transformers import CLIPModel, CLIPProcessor

        plan = plan_if_course_model(model_name)  # the load plan of a course model; None for other names
        source = plan.checkpoint if plan is not None else model_name
        self.model_name = model_name
        kwargs = plan.model_kwargs if plan is not None else {"device_map": str(pick_device())}
        self.model = CLIPModel.from_pretrained(source, **kwargs).eval()
        self.device = self.model.device
        self.processor = CLIPProcessor.from_pretrained(source)
        self.embedding_size: int = self.model.config.projection_dim
        # Your index: add what you need (e.g. an array of embeddings and a list of paths).
        self.embeddings = None
        self.paths: list[str | None] = []

    def index_images(self, images: list[ImageInput] | str | os.PathLike) -> int:
        """Embed ``images`` and append them to the index; return how many were added.

        ``images`` is a list of PIL images and/or image file paths (``str`` or ``Path``), or the
        path of one folder (then every image in it, in ``vlm_course.images.scan_folder`` order).
        Calling it again appends: earlier images keep their indices.
        A file that cannot be read as an image is skipped with a warning
        (``warnings.warn``) that names it; the other images are still indexed.
        """
        # TODO 1) 입력 정리: 폴더 경로라면 vlm_course.images.scan_folder(folder) 로 이미지 파일 목록을 얻고,
        #         경로는 vlm_course.images.load_image(path) 로 RGB 이미지를 여세요.
        #         읽을 수 없는 파일은 load_image 가 ImageLoadError 를 냅니다: 건너뛰고 warnings.warn 으로 알리세요.
        # TODO 2) 임베딩: inputs = self.processor(images=batch, return_tensors="pt").to(self.device)
        #         with torch.no_grad(): emb = self.model.get_image_features(**inputs).pooler_output
        #         한 장씩보다 여러 장(배치)을 한 번에 넣는 편이 훨씬 빠릅니다.
        # TODO 3) L2 정규화(emb / emb.norm(dim=-1, keepdim=True))한 뒤 float32 numpy 배열로 바꿔
        #         기존 임베딩 뒤에 이어 붙이고(np.concatenate), 경로(또는 None)도 self.paths 에 추가하세요.
        raise _todo("index_images")

    def search(self, query: str, top_k: int = 5) -> list[dict]:
        """The ``top_k`` images most similar to the text ``query``, best first (see the class docstring).

        ``top_k`` larger than the index returns every image.
        Raises ``ValueError`` for an empty or blank query, for ``top_k < 1``, and when nothing has
        been indexed yet.
        """
        # TODO 1) 잘못된 입력 확인: 빈 문자열/공백만 있는 query, top_k < 1, 비어 있는 인덱스 -> ValueError
        # TODO 2) 텍스트 임베딩: inputs = self.processor(text=[query], padding=True, return_tensors="pt")
        #         self.model.get_text_features(**inputs).pooler_output 을 구하고 L2 정규화하세요.
        # TODO 3) 정규화된 벡터끼리의 내적이 곧 코사인 유사도입니다: scores = self.embeddings @ q
        #         전부 정렬하지 말고 np.argpartition 으로 상위 top_k 개만 고른 뒤 그 안에서만 정렬하세요.
        # TODO 4) [{"index": i, "path": self.paths[i], "score": float(scores[i])}, ...] 를 점수 내림차순으로 반환
        raise _todo("search")

    # ---- 도전 과제 (bonus) -----------------------------------------------------------------------

    def search_by_image(self, image: ImageInput, top_k: int = 5) -> list[dict]:
        """Like ``search``, but the query is an image (a PIL image or a path): image-to-image search.

        An indexed image queried against its own index comes first with a score close to 1.
        """
        # TODO get_image_features 로 질의 이미지를 임베딩하고, search 의 TODO 3-4 를 그대로 재사용하세요.
        raise _todo("search_by_image")

    def save(self, path: str | os.PathLike) -> None:
        """Write the index to the file ``path``: embeddings, paths, model name and embedding size.

        Write atomically: a crash while saving must never leave a half-written file at ``path``.
        """
        # TODO np.savez 로 임시 파일에 쓴 다음 os.replace(임시파일, path) 로 한 번에 바꿔치기하세요.
        #      모델 이름(self.model_name)과 임베딩 크기(self.embedding_size)도 함께 저장합니다.
        raise _todo("save")

    def load(self, path: str | os.PathLike) -> int:
        """Replace this object's index with the one saved at ``path``; return how many images it holds.

        Raises ``ValueError`` when the index was built by another model (another model name or
        embedding size): its embeddings cannot be compared with this model's.
        """
        # TODO np.load 로 읽고, 저장된 모델 이름/임베딩 크기가 self 와 다르면 ValueError 를 내세요.
        raise _todo("load")

