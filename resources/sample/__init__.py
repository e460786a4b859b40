"""Sample data: the synthetic SAR oil-slick scene generator and the sample segmentation model."""
