import pytest

from tollgate_notifier.templates import MissingValue, load, render

VALUES = {
    "ApiKey": "tg_test_X",
    "ApiQuota": "10,000",
    "ProductName": "Pro",
    "CustomerEmail": "a@example.com",
    "PaymentProcessorCustomerName": "Ada",
    "CustomerPortalUrl": "http://portal",
}


class TestTemplates:
    def test_the_key_email_uses_every_placeholder(self) -> None:
        email = render(load("key_issued"), VALUES)
        assert email.subject == "Your Pro API key"
        for value in VALUES.values():
            assert value in email.body
        assert "{{" not in email.body

    def test_a_missing_value_is_an_error_not_blank_text(self) -> None:
        with pytest.raises(MissingValue):
            render(load("key_issued"), {k: v for k, v in VALUES.items() if k != "ApiKey"})

    def test_a_value_cannot_inject_headers_through_the_subject(self) -> None:
        email = render("Subject: Hi {{Name}}\n\nbody", {"Name": "x\r\nBcc: evil@example.com"})
        assert "\n" not in email.subject
        assert "\r" not in email.subject


class TestTopUpTemplate:
    def test_says_what_was_added_and_the_new_quota_without_the_key(self) -> None:
        email = render(
            load("key_topped_up"),
            {
                "ProductName": "Starter",
                "AddedQuota": "1,000",
                "ApiQuota": "2,000",
                "KeyDisplay": "tg_test_…abcd",
                "CustomerEmail": "a@example.com",
                "PaymentProcessorCustomerName": "Ada",
                "CustomerPortalUrl": "http://p",
            },
        )
        assert email.subject == "Starter: 1,000 calls added to your key"
        assert "2,000" in email.body and "tg_test_…abcd" in email.body


NOTICE_VALUES = {
    "Available": "40",
    "Threshold": "100",
    "InvoiceId": "in_123",
    "AttemptCount": "2",
    "CustomerName": "Ada",
    "CustomerEmail": "a@example.com",
    "CustomerPortalUrl": "http://portal",
}


@pytest.mark.parametrize("name", ["low_balance", "credits_exhausted", "payment_failed"])
def test_every_notice_template_renders_without_leftover_placeholders(name: str) -> None:
    email = render(load(name), NOTICE_VALUES)
    assert email.subject and "{{" not in email.subject + email.body
    assert "a@example.com" in email.body
