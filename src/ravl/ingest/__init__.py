"""Ingest: dataset readers -> safe image loading -> batched encoding -> atomic writes."""
