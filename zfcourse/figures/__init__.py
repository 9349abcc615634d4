"""Every matplotlib figure of the course, named after the paper's figures where it
has one. Figures take results computed by the method modules and draw them; they
compute nothing the methods could not.

* :mod:`.common`: images on axes, signed scales, boxes, grids, filters, feature maps.
* :mod:`.pooling`: switches and the two unpoolings (Sec. 2.1).
* :mod:`.projections`: projections beside their image (Fig. 1's deconvnet).
* :mod:`.fig2`: top-9 projections beside their patches (Fig. 2).
* :mod:`.fig4`: feature evolution during training (Fig. 4).
* :mod:`.fig5`: invariance curves (Fig. 5).
* :mod:`.fig6`: first-layer spectra and filter sizes (Fig. 6).
* :mod:`.fig7`: occlusion maps (Fig. 7).
* :mod:`.fig9`: transfer accuracy against training images per class (Fig. 9).
* :mod:`.tables`: tables of results, HTML on the page (:func:`.tables.table`).
"""
from . import common, fig2, fig4, fig5, fig6, fig7, fig9, pooling, projections, tables
from .common import (
                     draw_box,
                     feature_maps,
                     image_grid,
                     montage,
                     scale_each,
                     show_feature_map,
                     show_filters,
                     show_image,
                     signed_scale,
                     to_rgb,
)
from .tables import Table, summary_table, table

__all__ = ["common", "pooling", "projections", "fig2", "fig4", "fig5", "fig6", "fig7", "fig9", "tables",
           "Table", "table", "summary_table", "draw_box", "feature_maps", "image_grid", "montage", "scale_each", "show_feature_map", "show_filters", "show_image",
           "signed_scale", "to_rgb"]
