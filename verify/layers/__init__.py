"""verify layers: hand-written layer functions in the CS231n convention (affine_forward /
affine_backward, batchnorm_forward with bn_param, conv_forward_naive, softmax_loss, ...), each
forward/backward pair swept with hypothesis against torch (verify.layers.families), judged with
the handimpl layers' a priori bounds."""
