import torch

from kit.types import Conditioning, EncoderOutput, TokenKind


def test_select_packs_kept_kinds_left_in_order():
    hidden = torch.arange(2 * 1 * 5 * 1, dtype=torch.float32).view(2, 1, 5, 1)
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    S, P = int(TokenKind.SYSTEM), int(TokenKind.PROMPT)
    kinds = torch.tensor([[S, P, S, P, P], [S, S, P, P, P]])
    out = EncoderOutput(hidden, mask, kinds).select([TokenKind.PROMPT])
    assert out.mask.tolist() == [[True, True], [False, False]]
    assert out.hidden_states[0, 0, :, 0].tolist() == [1.0, 3.0]  # padded prompt token at 4 is dropped


def test_conditioning_where_and_cat_pad_token_axes():
    a = Conditioning(tokens=torch.ones(2, 3, 4), mask=torch.ones(2, 3, dtype=torch.bool))
    null = Conditioning(tokens=torch.zeros(2, 1, 4) - 1, mask=torch.ones(2, 1, dtype=torch.bool))
    mixed = a.where(torch.tensor([True, False]), null)
    assert mixed.tokens.shape == (2, 3, 4)
    assert mixed.mask.tolist() == [[True, False, False], [True, True, True]]
    assert mixed.tokens[0, 0, 0] == -1 and mixed.tokens[1, 2, 0] == 1
    both = Conditioning.cat([a, null])
    assert both.tokens.shape == (4, 3, 4) and both.mask.sum().item() == 6 + 2
    assert a.provided() == {"tokens"}
